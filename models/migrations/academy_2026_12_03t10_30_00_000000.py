"""Revocation that bites: an account's token version, bumped by the database itself.

* ``app_user.token_version``: an access token carries the version it was issued at; the API
  refuses a token whose version is not the account's current one.
* A BEFORE UPDATE trigger bumps it whenever the role, the active flag or the password
  changes, whoever makes the change (the API, a script, a hand-written UPDATE).
* An AFTER trigger NOTIFYs ``account_state`` with the tenant id when what a token check
  reads (role, active flag, version) changed or an account was deleted, so every API
  process drops its cached account states of that tenant (api/list_cache.py).
"""

from models.raw_migration import raw_sql_manager

ID = "2026-12-03T10:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "account token version"

FORWARD = [
    "ALTER TABLE app_user ADD COLUMN token_version integer NOT NULL DEFAULT 0",
    """
    CREATE FUNCTION app_user_token_version() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.role IS DISTINCT FROM OLD.role
           OR NEW.is_active IS DISTINCT FROM OLD.is_active
           OR NEW.password_hash IS DISTINCT FROM OLD.password_hash THEN
            NEW.token_version := OLD.token_version + 1;
        END IF;
        RETURN NEW;
    END $$
    """,
    "CREATE TRIGGER app_user_token_version BEFORE UPDATE ON app_user "
    "FOR EACH ROW EXECUTE FUNCTION app_user_token_version()",
    """
    CREATE FUNCTION account_state_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            PERFORM pg_notify('account_state', OLD.tenant::text);
        ELSIF NEW.token_version IS DISTINCT FROM OLD.token_version
              OR NEW.role IS DISTINCT FROM OLD.role
              OR NEW.is_active IS DISTINCT FROM OLD.is_active
              OR NEW.student_id IS DISTINCT FROM OLD.student_id
              OR NEW.guardian_id IS DISTINCT FROM OLD.guardian_id THEN
            PERFORM pg_notify('account_state', NEW.tenant::text);
        END IF;
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER account_state_upd AFTER UPDATE ON app_user "
    "FOR EACH ROW EXECUTE FUNCTION account_state_notify()",
    "CREATE TRIGGER account_state_del AFTER DELETE ON app_user "
    "FOR EACH ROW EXECUTE FUNCTION account_state_notify()",
]

BACKWARD = [
    "DROP TRIGGER IF EXISTS account_state_del ON app_user",
    "DROP TRIGGER IF EXISTS account_state_upd ON app_user",
    "DROP FUNCTION IF EXISTS account_state_notify()",
    "DROP TRIGGER IF EXISTS app_user_token_version ON app_user",
    "DROP FUNCTION IF EXISTS app_user_token_version()",
    "ALTER TABLE app_user DROP COLUMN IF EXISTS token_version",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)

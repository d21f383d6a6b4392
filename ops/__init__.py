"""Operations: settings, storage, logging, local runtime, provisioning and maintenance."""

// A staff member's and a parent's day through the typed client, against a running API:
// log in, create a lecture and a student, enrol the student, import a roster workbook and
// follow its job to the end, give the student's guardian an account, and read that parent's
// `/me` page. Prints one JSON line of what it saw; exits non-zero on the first failure.
//
//   ACADEMY_API_URL=http://127.0.0.1:8000 ACADEMY_EMAIL=... ACADEMY_PASSWORD=... \
//   ACADEMY_ROSTER=roster.xlsx npx tsx src/walkthrough.ts
//
// Everything it sends and reads is typed by generated/academy.d.ts (`just client`): a field
// the OpenAPI document does not declare fails `tsc --noEmit`.
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import createClient, { type Client } from "openapi-fetch";
import type { components, paths } from "../generated/academy.js";

type Job = components["schemas"]["Job"];

const JOB_WAIT_MS = 120_000;
const POLL_MS = 250;

function setting(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name}`);
  return value;
}

/** The body of a successful answer; anything else stops the program with the problem. */
function ok<T>(what: string, answer: { data?: T; error?: unknown; response: Response }): T {
  if (answer.data === undefined) {
    const problem = JSON.stringify(answer.error);
    throw new Error(`${what}: ${answer.response.status} ${problem}`);
  }
  return answer.data;
}

async function logIn(base: string, email: string, password: string): Promise<Client<paths>> {
  const anonymous = createClient<paths>({ baseUrl: base });
  const tokens = ok(
    "log in",
    await anonymous.POST("/api/v1/auth/login", { body: { email, password } }),
  );
  return createClient<paths>({
    baseUrl: base,
    headers: { Authorization: `Bearer ${tokens.access_token}` },
  });
}

async function followJob(api: Client<paths>, jobId: string): Promise<Job> {
  const deadline = Date.now() + JOB_WAIT_MS;
  for (;;) {
    const job = ok(
      "job",
      await api.GET("/api/v1/jobs/{job_id}", { params: { path: { job_id: jobId } } }),
    );
    if (job.status === "DONE" || job.status === "FAILED") return job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} is still ${job.status}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function importRoster(api: Client<paths>, path: string, lectureId: string): Promise<Job> {
  const workbook = new Blob([await readFile(path)]);
  const accepted = ok(
    "roster upload",
    await api.POST("/api/v1/enrollments/excel", {
      body: { file: workbook, lecture_ids: [lectureId], mode: "upsert" },
      bodySerializer(body) {
        const form = new FormData();
        form.append("file", body.file, basename(path));
        for (const id of body.lecture_ids ?? []) form.append("lecture_ids", id);
        if (body.mode) form.append("mode", body.mode);
        return form;
      },
    }),
  );
  return followJob(api, accepted.job_id);
}

async function main(): Promise<void> {
  const base = setting("ACADEMY_API_URL");
  const staff = await logIn(base, setting("ACADEMY_EMAIL"), setting("ACADEMY_PASSWORD"));
  const stamp = Date.now().toString(36);

  const lecture = ok(
    "lecture",
    await staff.POST("/api/v1/lectures", {
      body: { title: `중2 수학 ${stamp}`, subject: "수학", status: "open" },
    }),
  );
  const student = ok(
    "student",
    await staff.POST("/api/v1/students", {
      body: {
        name: "김하은",
        school: "한빛중학교",
        grade: "중2",
        guardians: [
          {
            name: "어머니",
            phone: setting("ACADEMY_GUARDIAN_PHONE"),
            relation: "mother",
            is_primary: true,
          },
        ],
      },
    }),
  );
  const enrolment = ok(
    "enrolment",
    await staff.POST("/api/v1/lectures/{lecture_id}/enrollments", {
      params: { path: { lecture_id: lecture.id } },
      body: { student_id: student.id },
    }),
  );
  const job = await importRoster(staff, setting("ACADEMY_ROSTER"), lecture.id);
  const roster = ok(
    "roster",
    await staff.GET("/api/v1/lectures/{lecture_id}/roster", {
      params: { path: { lecture_id: lecture.id }, query: { limit: 200 } },
    }),
  );

  const guardian = student.guardians[0];
  if (!guardian) throw new Error("the student came back without a guardian");
  const parentEmail = `parent-${stamp}@family.example`;
  const parentPassword = `parent-${stamp}-password`;
  ok(
    "parent account",
    await staff.POST("/api/v1/users", {
      body: {
        email: parentEmail,
        role: "parent",
        name: guardian.name,
        password: parentPassword,
        guardian_id: guardian.id,
      },
    }),
  );
  const parent = await logIn(base, parentEmail, parentPassword);
  const mine = ok("my students", await parent.GET("/api/v1/me/students"));

  console.log(
    JSON.stringify({
      lecture: lecture.id,
      student: student.id,
      enrolment: enrolment.status,
      job: { id: job.id, status: job.status, progress: job.progress, error: job.error },
      enrolled: roster.items.map((item) => item.student_id),
      parent_sees: mine.items.map((item) => item.name),
    }),
  );
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});

// The school day's load (`just bench day`): every role's visits at a constant arrival
// rate, and the video viewers, one virtual user each, sending a heartbeat every 10 s.
// Only the public HTTP API. Each endpoint has its own Trend (`ep_<name>`, ms) and error
// Counter (`err_<name>`) in the summary.
import http from 'k6/http';
import { sleep } from 'k6';
import exec from 'k6/execution';
import { SharedArray } from 'k6/data';
import { Counter, Trend } from 'k6/metrics';

// Parsed once per list, not once per virtual user (1,000 viewers would parse it 1,000 times).
const pick = (name) => new SharedArray(name, () => JSON.parse(open(__ENV.DATA))[name]);
const viewers = pick('viewers');
const students = pick('students');
const parents = pick('parents');
const classes = pick('classes');
const staff = pick('staff');
const API = `${__ENV.BASE}/api/v1`;
const SECONDS = __ENV.SECONDS * 1;
const BEAT = 10; // seconds between heartbeats, as the player sends them

const ENDPOINTS = [
  'me_students', 'me_student', 'me_lectures', 'me_sessions', 'me_scores',
  'video_playback', 'video_progress', 'attendance_sheet', 'attendance_put',
  'exam_scores', 'scores_put', 'students_search', 'students_list', 'student_get',
];
const trends = {};
const errors = {};
for (const name of ENDPOINTS) {
  trends[name] = new Trend(`ep_${name}`, true);
  errors[name] = new Counter(`err_${name}`);
}
const accepted = new Counter('beats_accepted');
const refused = new Counter('beats_refused');
const visits = {};
for (const role of ['student', 'parent', 'teacher', 'staff', 'viewer']) {
  visits[role] = new Counter(`visits_${role}`);
}

function perMinute(users) {
  return { executor: 'constant-arrival-rate', rate: Math.max(1, Math.round(users)), timeUnit: '1m',
           duration: `${SECONDS}s`, preAllocatedVUs: 10, maxVUs: 200 };
}

export const options = {
  discardResponseBodies: true,
  scenarios: {
    viewers: { executor: 'per-vu-iterations', vus: viewers.length, iterations: 1,
               maxDuration: `${SECONDS + 30}s`, exec: 'viewer' },
    students: { ...perMinute(__ENV.STUDENTS_PER_MIN * 1), exec: 'student' },
    parents: { ...perMinute(__ENV.PARENTS_PER_MIN * 1), exec: 'parent' },
    teachers: { ...perMinute(__ENV.TEACHERS_PER_MIN * 1), exec: 'teacher' },
    staff: { ...perMinute(__ENV.STAFF_PER_MIN * 1), exec: 'office' },
  },
};

let logged = 0;

function call(name, method, url, token, body, expect = 200) {
  const params = { headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
                   tags: { name }, responseType: 'none' };
  const r = http.request(method, url, body === undefined ? null : JSON.stringify(body), params);
  trends[name].add(r.timings.duration);
  if (r.status !== expect && !(name === 'video_progress' && r.status === 409)) {
    errors[name].add(1);
    if (logged++ < 2 && exec.vu.idInTest % 100 === 1) console.warn(`${name}: ${method} ${url} -> ${r.status}`);
  }
  return r;
}

const any = (list) => list[Math.floor(Math.random() * list.length)];

export function viewer() {
  const me = viewers[exec.scenario.iterationInTest];
  const end = Date.now() + SECONDS * 1000;
  sleep(Math.random() * BEAT); // viewers do not all press play in the same second
  call('video_playback', 'GET', `${API}/videos/${me.v}/playback`, me.t);
  visits.viewer.add(1);
  // The player's clock: a beat every 10 s of playback, whatever the server's answers take
  // (an open loop: a slow server does not slow the viewers down). A beat that reaches the
  // server much sooner than 10 s after the previous one was recorded (the previous one
  // queued, this one not) is refused by the proctored anti-cheat as faster than real time.
  let tick = Date.now();
  let position = 0;
  for (let seq = 1; tick + BEAT * 1000 < end; seq++) {
    tick += BEAT * 1000;
    sleep(Math.max(0, tick - Date.now()) / 1000);
    const played = [[position, position + BEAT]];
    position += BEAT;
    const r = call('video_progress', 'POST', `${API}/videos/${me.v}/progress`, me.t,
                   { position, played, seq });
    if (r.status === 200) accepted.add(1);
    else if (r.status === 409) refused.add(1);
  }
}

export function student() {
  const me = any(students);
  call('me_students', 'GET', `${API}/me/students`, me.t);
  call('me_lectures', 'GET', `${API}/me/students/${me.s}/lectures`, me.t);
  call('me_sessions', 'GET', `${API}/me/students/${me.s}/sessions`, me.t);
  call('me_scores', 'GET', `${API}/me/students/${me.s}/scores`, me.t);
  visits.student.add(1);
}

export function parent() {
  const me = any(parents);
  call('me_students', 'GET', `${API}/me/students`, me.t);
  call('me_student', 'GET', `${API}/me/students/${me.s}`, me.t);
  call('me_sessions', 'GET', `${API}/me/students/${me.s}/sessions`, me.t);
  call('me_scores', 'GET', `${API}/me/students/${me.s}/scores`, me.t);
  visits.parent.add(1);
}

const STATUSES = Array(17).fill('present').concat(['late', 'absent', 'absent']);

export function teacher() {
  // Lecture after lecture: each class is checked and scored once, as in a day.
  const c = classes[exec.scenario.iterationInTest % classes.length];
  call('attendance_sheet', 'GET', `${API}/sessions/${c.session}/attendance`, c.t);
  const items = c.students.map((id) => ({ student_id: id, status: any(STATUSES) }));
  call('attendance_put', 'PUT', `${API}/sessions/${c.session}/attendance`, c.t, { items });
  call('exam_scores', 'GET', `${API}/exams/${c.exam}/scores`, c.t);
  const scores = c.students.map((id) => ({ student_id: id, score: 40 + Math.floor(Math.random() * 61) }));
  call('scores_put', 'PUT', `${API}/exams/${c.exam}/scores`, c.t, scores);
  visits.teacher.add(1);
}

export function office() {
  const me = any(staff);
  call('students_search', 'GET', `${API}/students?q=${encodeURIComponent(any(me.q))}&limit=20`, me.t);
  call('students_list', 'GET', `${API}/students?limit=50`, me.t);
  call('student_get', 'GET', `${API}/students/${any(me.ids)}`, me.t);
  visits.staff.add(1);
}

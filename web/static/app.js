// The web view: sign in with a token, see one's jobs, follow a job's output, start and stop jobs, all through
// the API at POST / on this same origin.
//
// The token lives in this module's memory only: never in the address, in storage or in a cookie, so it is gone
// when the tab is closed or reloaded. Everything a job or the server says reaches the page as text (textContent,
// text nodes), never as HTML; the page's Content-Security-Policy requires Trusted Types, so an HTML sink would
// throw rather than render.

const LIST_EVERY_MS = 1000; // a job started elsewhere shows within a second or so
const LIST_HIDDEN_EVERY_MS = 5000; // while the tab is not shown
const RETRY_MS = 2000;
const WAIT_SECONDS = 25; // the long poll for output and status; the API allows up to 30
const FINAL = new Set(["finished", "stopped", "error"]);

const $ = (id) => document.getElementById(id);
const el = {
  signIn: $("sign-in"), signInForm: $("sign-in-form"), token: $("token"), signInError: $("sign-in-error"),
  signOut: $("sign-out"), signedIn: $("signed-in"),
  startForm: $("start-form"), command: $("command"), labels: $("labels"), start: $("start"),
  jobs: $("jobs"), noJobs: $("no-jobs"),
  job: $("job"), jobTitle: $("job-title"), jobId: $("job-id"), jobState: $("job-state"), stop: $("stop"),
  jobFacts: $("job-facts"), noOutput: $("no-output"), output: $("output"),
  message: $("message"),
};

let token = null;
let session = 0; // a new one at each sign-in and sign-out: answers that arrive for an older one are dropped
let listTimer = null;
let listing = null; // the session whose list request is in flight, if any
let followed = null; // the job whose output is shown: {jobID, offset, controller, session}
const rows = new Map(); // jobID -> the table row's parts

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function call(action, fields = {}, signal = undefined) {
  let response;
  try {
    response = await fetch("/", {
      method: "POST",
      headers: {"Authorization": `Bearer ${token}`, "Content-Type": "application/json"},
      body: JSON.stringify({action, ...fields}),
      cache: "no-store",
      credentials: "same-origin",
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "the server could not be reached");
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const said = body && typeof body.error === "string" ? body.error : `the server answered ${response.status}`;
    throw new ApiError(response.status, said);
  }
  return body;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function say(text) {
  setText(el.message, text);
}

// Signing in and out

async function signIn(event) {
  event.preventDefault();
  const typed = el.token.value.trim();
  setText(el.signInError, "");
  if (!typed) {
    setText(el.signInError, "Type your token to sign in.");
    return;
  }
  if (!/^[\x21-\x7e]+$/.test(typed)) {
    setText(el.signInError, "That is not a token: a token is letters, digits and punctuation, without spaces.");
    return;
  }
  token = typed;
  let answer;
  try {
    answer = await call("list");
  } catch (error) {
    token = null;
    setText(el.signInError, error.status === 401
      ? `The server refused this token (${error.message}). Check it and try again.`
      : `Could not sign in: ${error.message}.`);
    el.token.focus();
    return;
  }
  el.token.value = "";
  session += 1;
  el.signIn.hidden = true;
  el.signedIn.hidden = false;
  el.signOut.hidden = false;
  say("Signed in.");
  showJobs(answer.jobs);
  scheduleList(session);
  el.command.focus();
}

function signOut(why) {
  session += 1;
  token = null;
  clearTimeout(listTimer);
  stopFollowing();
  rows.clear();
  el.jobs.replaceChildren();
  el.job.hidden = true;
  el.signedIn.hidden = true;
  el.signOut.hidden = true;
  el.signIn.hidden = false;
  el.command.value = "";
  el.labels.value = "";
  setText(el.signInError, why || "");
  say(why ? "" : "Signed out.");
  el.token.focus();
}

function refused(error) {
  // A token that stops working (it expired, or was replaced) ends the session.
  if (error.status !== 401) return false;
  signOut(`The server no longer accepts your token (${error.message}): sign in again.`);
  return true;
}

// The list of jobs

function scheduleList(mine, delay = undefined) {
  clearTimeout(listTimer);
  const wait = delay ?? (document.hidden ? LIST_HIDDEN_EVERY_MS : LIST_EVERY_MS);
  listTimer = setTimeout(() => refreshList(mine), wait);
}

async function refreshList(mine) {
  if (listing === mine) return; // the one in flight reschedules itself
  listing = mine;
  try {
    const answer = await call("list");
    if (mine !== session) return;
    showJobs(answer.jobs);
  } catch (error) {
    if (mine !== session || refused(error)) return;
    say(`Could not bring the list up to date: ${error.message}. Trying again.`);
  } finally {
    if (listing === mine) listing = null;
    if (mine === session) scheduleList(mine);
  }
}

function refreshListSoon() {
  scheduleList(session, 0);
}

function showJobs(jobs) {
  const seen = new Set();
  jobs.forEach((job, index) => {
    seen.add(job.jobID);
    let row = rows.get(job.jobID);
    if (!row) {
      row = newRow(job);
      rows.set(job.jobID, row);
    }
    updateRow(row, job);
    // Rows are moved only when out of place, so a focused ID button keeps its focus as new jobs arrive above it.
    const here = el.jobs.children[index];
    if (here !== row.tr) el.jobs.insertBefore(row.tr, here ?? null);
  });
  for (const [jobID, row] of rows) {
    if (!seen.has(jobID)) {
      row.tr.remove();
      rows.delete(jobID);
    }
  }
  el.noJobs.hidden = jobs.length > 0;
}

function cell(tr, tag = "td") {
  const td = document.createElement(tag);
  tr.append(td);
  return td;
}

function newRow(job) {
  const tr = document.createElement("tr");
  const idCell = cell(tr, "th");
  idCell.scope = "row";
  const button = document.createElement("button");
  button.type = "button";
  button.className = "job-id mono";
  button.textContent = job.jobID;
  button.addEventListener("click", () => follow(job.jobID, true));
  idCell.append(button);
  const command = cell(tr);
  command.className = "command mono";
  command.textContent = job.command;
  const status = document.createElement("span");
  cell(tr).append(status);
  const started = cell(tr);
  started.className = "started";
  const ending = cell(tr);
  const labels = cell(tr);
  labels.append(labelList(job.labels));
  return {tr, status, started, ending};
}

function updateRow(row, job) {
  showStatus(row.status, job.status);
  setText(row.started, job.startedAt ? when(job.startedAt) : job.status === "created" ? "waiting" : "");
  setText(row.ending, ending(job));
  if (followed && followed.jobID === job.jobID) {
    row.tr.setAttribute("aria-current", "true");
  } else {
    row.tr.removeAttribute("aria-current");
  }
}

function showStatus(node, status) {
  setText(node, status); // said in words; the colour only repeats it
  const name = `status status-${status}`;
  if (node.className !== name) node.className = name;
}

function labelList(labels) {
  const list = document.createElement("ul");
  list.className = "labels";
  for (const label of labels || []) {
    const item = document.createElement("li");
    item.textContent = label;
    list.append(item);
  }
  return list;
}

// Words for what the API says

function when(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString(undefined, {dateStyle: "short", timeStyle: "medium"});
}

function ending(job) {
  const parts = [];
  if (job.exitCode !== null && job.exitCode !== undefined) parts.push(`exit code ${job.exitCode}`);
  if (job.signal) parts.push(`signal ${job.signal}`);
  if (job.reason) parts.push(job.reason);
  return parts.join("; ");
}

function bytes(count) {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let value = count;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${count} bytes` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

function seconds(value) {
  return `${Number(value.toFixed(3))} s`;
}

function limitsText(limits) {
  if (!limits) return "";
  const parts = [];
  if (limits.timeoutSeconds != null) parts.push(`time ${seconds(limits.timeoutSeconds)}`);
  if (limits.memoryBytes != null) parts.push(`memory ${bytes(limits.memoryBytes)}`);
  if (limits.cpus != null) parts.push(`${limits.cpus} ${limits.cpus === 1 ? "CPU" : "CPUs"}`);
  if (limits.processes != null) parts.push(`${limits.processes} processes`);
  return parts.join(", ");
}

function usageText(usage) {
  if (!usage) return "";
  const parts = [];
  if (usage.cpuSeconds != null) parts.push(`CPU ${seconds(usage.cpuSeconds)}`);
  if (usage.peakMemoryBytes != null) parts.push(`peak memory ${bytes(usage.peakMemoryBytes)}`);
  return parts.join(", ");
}

function stateText(job) {
  const how = ending(job);
  return `${job.jobID} is ${job.status}${how ? ` (${how})` : ""}.`;
}

// One job: its facts and its output, followed with the status long poll

function follow(jobID, moveFocus) {
  stopFollowing();
  followed = {jobID, offset: 0, controller: new AbortController(), session};
  el.job.hidden = false;
  setText(el.jobId, jobID);
  setText(el.jobState, "");
  el.jobFacts.replaceChildren();
  el.output.replaceChildren();
  el.noOutput.hidden = true;
  el.stop.hidden = true;
  el.stop.disabled = false;
  for (const [id, row] of rows) {
    if (id === jobID) row.tr.setAttribute("aria-current", "true");
    else row.tr.removeAttribute("aria-current");
  }
  if (moveFocus) el.jobTitle.focus();
  readOutput(followed);
}

function stopFollowing() {
  if (followed) followed.controller.abort();
  followed = null;
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, {once: true});
  });
}

async function readOutput(mine) {
  let wait = 0; // the first answer at once
  while (mine === followed) {
    let job;
    try {
      job = await call("status", {jobID: mine.jobID, offset: mine.offset, wait}, mine.controller.signal);
    } catch (error) {
      if (mine !== followed || mine.session !== session || refused(error)) return;
      if (error.status === 404) {
        setText(el.jobState, `${mine.jobID} is no longer known to the server.`);
        return;
      }
      say(`Could not read ${mine.jobID}: ${error.message}. Trying again.`);
      await pause(RETRY_MS, mine.controller.signal);
      continue;
    }
    if (mine !== followed) return;
    const before = mine.offset;
    appendOutput(job.output);
    mine.offset = job.nextOffset;
    showJob(job);
    const final = FINAL.has(job.status);
    // An ended job may still have more output than one answer carries: read on, without waiting.
    if (final && (job.nextOffset >= job.outputBytes || job.nextOffset === before)) return;
    wait = final ? 0 : WAIT_SECONDS;
  }
}

function appendOutput(text) {
  if (!text) return;
  const output = el.output;
  const atEnd = output.scrollHeight - output.scrollTop - output.clientHeight < 8;
  output.append(document.createTextNode(text)); // text, whatever it looks like: never parsed as HTML
  if (atEnd) output.scrollTop = output.scrollHeight;
}

function showJob(job) {
  setText(el.jobState, stateText(job));
  el.stop.hidden = FINAL.has(job.status);
  el.noOutput.hidden = job.outputBytes > 0;
  const facts = [
    ["Command", job.command],
    ["Status", job.status],
    ["Created", job.createdAt ? when(job.createdAt) : ""],
    ["Started", job.startedAt ? when(job.startedAt) : ""],
    ["Ended", job.endedAt ? when(job.endedAt) : ""],
    ["Exit code or reason", ending(job)],
    ["Labels", job.labels && job.labels.length ? job.labels : null],
    ["Limits", limitsText(job.limits)],
    ["Used", usageText(job.usage)],
    ["Output", job.outputBytes ? `${bytes(job.outputBytes)}${job.outputDropped
      ? `, of which ${bytes(job.outputDropped)} dropped from the middle` : ""}` : ""],
  ];
  const shown = [];
  for (const [name, value] of facts) {
    if (!value) continue;
    const item = document.createElement("div");
    const term = document.createElement("dt");
    term.textContent = name;
    const detail = document.createElement("dd");
    if (Array.isArray(value)) {
      detail.append(labelList(value));
    } else {
      detail.textContent = value;
      if (name === "Command") detail.className = "mono";
    }
    item.append(term, detail);
    shown.push(item);
  }
  el.jobFacts.replaceChildren(...shown);
  const row = rows.get(job.jobID);
  if (row) updateRow(row, job);
}

// Starting and stopping

async function startCommand(event) {
  event.preventDefault();
  const command = el.command.value;
  if (!command.trim()) {
    say("Type a command to start.");
    el.command.focus();
    return;
  }
  const labels = el.labels.value.split(",").map((label) => label.trim()).filter(Boolean);
  const mine = session;
  el.start.disabled = true;
  say(`Starting ${command}`);
  try {
    const ref = await call("start", labels.length ? {command, labels} : {command});
    if (mine !== session) return;
    el.command.value = "";
    el.labels.value = "";
    say(`Started ${ref.jobID}.`);
    refreshListSoon();
    follow(ref.jobID, false);
  } catch (error) {
    if (mine !== session || refused(error)) return;
    say(`Could not start the command: ${error.message}.`);
  } finally {
    el.start.disabled = false;
  }
}

async function stopJob() {
  if (!followed) return;
  const {jobID} = followed;
  const mine = session;
  el.stop.disabled = true;
  say(`Stopping ${jobID}`);
  try {
    await call("stop", {jobID});
    if (mine !== session) return;
    say(`Stopped ${jobID}.`);
    refreshListSoon();
  } catch (error) {
    if (mine !== session || refused(error)) return;
    say(`Could not stop ${jobID}: ${error.message}.`);
  } finally {
    el.stop.disabled = false;
  }
}

el.signInForm.addEventListener("submit", signIn);
el.signOut.addEventListener("click", () => signOut(""));
el.startForm.addEventListener("submit", startCommand);
el.stop.addEventListener("click", stopJob);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && token) refreshListSoon();
});
el.token.focus();

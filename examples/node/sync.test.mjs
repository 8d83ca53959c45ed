// What an application's own tests look like against unisender-local, with Node's built-in test
// runner (node --test) and fetch. Set UNISENDER_LOCAL_BIN to the binary.
import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const KEY = "node-key";
let server, url;

async function api(method, params = {}) {
  const body = new URLSearchParams({ api_key: KEY, ...params });
  const answer = await fetch(`${url}/en/api/${method}?format=json`, { method: "POST", body });
  return { status: answer.status, json: await answer.json() };
}

async function local(method, path, body) {
  const answer = await fetch(url + path, { method, body: body && JSON.stringify(body) });
  return answer.json();
}

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), "unisender-local-"));
  const fixture = join(dir, "fixture.csv");
  writeFileSync(fixture, "email,tags\nanna@example.com,vip\nboris@example.com,\n");
  const ready = join(dir, "ready");
  server = spawn(process.env.UNISENDER_LOCAL_BIN ?? "unisender-local", [
    "serve", "--listen", "127.0.0.1:0", "--quiet", "--db", join(dir, "test.db"),
    "--account", `shop:${KEY}`, "--seed", `${fixture}:Customers`, "--ready-file", ready,
  ], { stdio: "ignore" });
  for (let waited = 0; !existsSync(ready); waited += 20) {
    assert.ok(waited < 30000, "the server did not get ready");
    await sleep(20);
  }
  url = readFileSync(ready, "utf8").trim();
  await local("POST", "/_local/snapshots/fixture");
});

after(() => server.kill("SIGTERM"));

beforeEach(async () => {
  await local("POST", "/_local/snapshots/fixture/restore");
  await local("DELETE", "/_local/requests");
});

test("the fixture is there", async () => {
  const lists = (await api("getLists")).json.result;
  assert.deepEqual(lists.map((l) => l.title), ["Customers"]);
  const count = (await api("getContactCount", { list_id: lists[0].id })).json.result.count;
  assert.equal(count, 2);
});

test("an import is journaled, and the next test starts from the fixture again", async () => {
  await api("importContacts", { "field_names[0]": "email", "data[0][0]": "clara@example.com" });
  const calls = (await local("GET", "/_local/requests")).requests;
  assert.equal(calls[0].outcome.inserted, 1);
  assert.equal(calls[0].params.api_key, "…-key");
});

test("each test starts from the fixture", async () => {
  assert.equal((await api("getTotalContactsCount", { login: "shop" })).json.result.total, 2);
});

test("a retry path", async () => {
  await local("POST", "/_local/faults", { method: "getLists", times: 1, http_status: 503 });
  assert.equal((await api("getLists")).status, 503);
  assert.equal((await api("getLists")).status, 200);
  await local("DELETE", "/_local/faults");
});

// The /account page's script. "Sign out": DELETE /auth/session, then back to
// /login. "API keys": lists the caller's keys (GET /api/profile/api-keys),
// creates one (POST) and shows its secret once, revokes one (DELETE).
// "Passkeys": lists them, adds one with the browser's WebAuthn ceremony
// between register/start and register/finish, removes one.
// Unsafe requests carry the session's CSRF token (the rampart_csrf cookie
// /login leaves). Text from the API is only ever set with textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const KEYS = "/api/profile/api-keys";

function csrfToken() {
  const pair = document.cookie.split("; ").find((entry) => entry.startsWith("rampart_csrf="));
  return pair ? decodeURIComponent(pair.slice("rampart_csrf=".length)) : "";
}

// One API call with the session cookie; `body` is null for a 204 or a body
// that is not JSON. A network failure is status 0.
async function api(path, options = {}) {
  const headers = Object.assign({ accept: "application/json" }, options.headers || {});
  if (options.method && options.method !== "GET") headers["x-csrf-token"] = csrfToken();
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers, credentials: "same-origin" }));
  } catch {
    return { status: 0, body: null };
  }
  let body = null;
  if (response.status !== 204) body = await response.json().catch(() => null);
  return { status: response.status, body };
}

// What to tell a person about a failed call.
function failure(what, status, body) {
  if (status === 0) return "The server could not be reached.";
  return (body && body.detail) || `${what} failed (${status}).`;
}

// A session that ended (expired, signed out elsewhere) goes back to /login.
function signedOut(status) {
  if (status !== 401) return false;
  window.location.assign("/login?next=%2Faccount");
  return true;
}

// --- Sign out ---

$("sign-out").addEventListener("click", async () => {
  const { status } = await api("/auth/session", { method: "DELETE" });
  if ((status >= 200 && status < 300) || status === 401) {
    document.cookie = "rampart_csrf=; Path=/; Max-Age=0; SameSite=Strict";
    window.location.assign("/login");
  } else {
    $("message").textContent = "Signing out failed; reload the page and try again.";
  }
});

// --- Two-factor sign-in ---

const MFA = "/api/profile/mfa";

function showMfaStatus(factors) {
  const on = factors.totp;
  const passkeys = Array.isArray(factors.methods) && factors.methods.includes("passkey");
  $("mfa-status").textContent = on
    ? `An authenticator app is on. Recovery codes left: ${factors.recovery_codes_left}.`
    : passkeys
      ? "Your passkeys are the second step after your password. You can add an authenticator app too."
      : "Only your password protects this account. Add an authenticator app or a passkey for a second step.";
  $("totp-start").hidden = on;
  $("totp-off-form").hidden = !on;
  $("totp-enrol").hidden = true;
}

async function loadMfa() {
  const { status, body } = await api(MFA);
  if (signedOut(status)) return;
  if (status !== 200) {
    $("mfa-message").textContent = failure("Loading your second factors", status, body);
    return;
  }
  showMfaStatus(body);
}

// The QR code is an SVG document from the API: parsed as XML and adopted,
// never written as HTML.
function showQr(svgText) {
  const holder = $("totp-qr");
  holder.replaceChildren();
  const parsed = new DOMParser().parseFromString(svgText, "image/svg+xml");
  const svg = parsed.documentElement;
  if (svg.nodeName !== "svg" || parsed.getElementsByTagName("parsererror").length) return;
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "QR code of the authenticator key");
  holder.appendChild(document.importNode(svg, true));
}

$("totp-start").addEventListener("click", async () => {
  $("mfa-message").textContent = "";
  const { status, body } = await api(`${MFA}/totp`, { method: "POST" });
  if (signedOut(status)) return;
  if (status !== 201) {
    $("mfa-message").textContent = failure("Starting the set-up", status, body);
    return;
  }
  showQr(body.qr_svg);
  $("totp-secret").textContent = body.secret;
  $("totp-start").hidden = true;
  $("totp-enrol").hidden = false;
  $("totp-code").focus();
});

$("totp-confirm-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("mfa-message").textContent = "";
  const { status, body } = await api(`${MFA}/totp/confirm`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ code: $("totp-code").value.trim() }),
  });
  if (signedOut(status)) return;
  if (status !== 200) {
    $("mfa-message").textContent = failure("Turning it on", status, body);
    return;
  }
  const list = $("recovery-codes");
  list.replaceChildren();
  for (const code of body.recovery_codes) {
    const item = document.createElement("li");
    const text = document.createElement("code");
    text.textContent = code;
    item.appendChild(text);
    list.appendChild(item);
  }
  $("totp-enrol").hidden = true;
  $("totp-qr").replaceChildren();
  $("totp-secret").textContent = "";
  $("recovery-panel").hidden = false;
});

$("recovery-done").addEventListener("click", () => {
  $("recovery-codes").replaceChildren();
  $("recovery-panel").hidden = true;
  loadMfa();
});

$("totp-off-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("mfa-message").textContent = "";
  const { status, body } = await api(`${MFA}/totp`, {
    method: "DELETE",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ code: $("totp-off-code").value.trim() }),
  });
  if (signedOut(status)) return;
  if (status !== 204) {
    $("mfa-message").textContent = failure("Turning it off", status, body);
    return;
  }
  $("totp-off-code").value = "";
  loadMfa();
});

loadMfa();

// --- Passkeys ---

const PASSKEYS = "/api/profile/passkeys";
const passkeyForm = $("passkey-form");

function passkeyItem(passkey) {
  const li = document.createElement("li");
  li.dataset.id = passkey.id;
  const label = document.createElement("span");
  label.className = "passkey-name";
  label.textContent = passkey.name;
  const when = document.createElement("span");
  when.className = "hint";
  const used = passkey.last_used_at ? new Date(passkey.last_used_at).toLocaleString() : "never";
  when.textContent = ` added ${new Date(passkey.created_at).toLocaleDateString()}, last used ${used} `;
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "secondary remove-passkey";
  remove.textContent = "Remove";
  remove.setAttribute("aria-label", `Remove ${passkey.name}`);
  remove.addEventListener("click", async () => {
    remove.disabled = true;
    $("passkey-message").textContent = "";
    const { status, body } = await api(`${PASSKEYS}/${encodeURIComponent(passkey.id)}`, { method: "DELETE" });
    if (signedOut(status)) return;
    if (status !== 204 && status !== 404) {
      remove.disabled = false;
      $("passkey-message").textContent = failure(`Removing ${passkey.name}`, status, body);
      return;
    }
    await loadPasskeys();
    await loadMfa();
  });
  li.append(label, when, remove);
  return li;
}

async function loadPasskeys() {
  const { status, body } = await api(PASSKEYS);
  if (signedOut(status)) return;
  if (status !== 200 || !body || !Array.isArray(body.items)) {
    $("passkey-message").textContent = failure("Listing your passkeys", status, body);
    return;
  }
  $("passkeys").replaceChildren(...body.items.map(passkeyItem));
  $("no-passkeys").hidden = body.items.length > 0;
}

if (passkeyForm) {
  const supported =
    typeof window.PublicKeyCredential === "function" &&
    typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function";
  if (!supported) {
    $("passkey-add").disabled = true;
    $("passkey-message").textContent = "This browser cannot make passkeys.";
  }
  passkeyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    $("passkey-message").textContent = "";
    const name = $("passkey-name").value.trim();
    if (!name) {
      $("passkey-message").textContent = "Give the passkey a name, such as the device it is on.";
      return;
    }
    $("passkey-add").disabled = true;
    try {
      const started = await api(`${PASSKEYS}/register/start`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name }),
      });
      if (signedOut(started.status)) return;
      if (started.status !== 200) {
        $("passkey-message").textContent = failure("Adding a passkey", started.status, started.body);
        return;
      }
      let credential;
      try {
        const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(started.body);
        credential = await navigator.credentials.create({ publicKey });
      } catch (error) {
        $("passkey-message").textContent = error && error.name === "InvalidStateError"
          ? "This device holds a passkey of this account already."
          : "The passkey was not made (cancelled or timed out).";
        return;
      }
      const finished = await api(`${PASSKEYS}/register/finish`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(credential.toJSON()),
      });
      if (signedOut(finished.status)) return;
      if (finished.status !== 201) {
        $("passkey-message").textContent = failure("Adding a passkey", finished.status, finished.body);
        return;
      }
      $("passkey-name").value = "";
      await loadPasskeys();
      await loadMfa();
    } finally {
      $("passkey-add").disabled = false;
    }
  });
  loadPasskeys();
}

// --- API keys ---

function cell(text, title) {
  const td = document.createElement("td");
  td.textContent = text;
  if (title) td.title = title;
  return td;
}

function day(time) {
  return time ? new Date(time).toLocaleDateString() : "never";
}

function moment(time) {
  return time ? new Date(time).toLocaleString() : "never";
}

function keyRow(key) {
  const tr = document.createElement("tr");
  tr.dataset.id = key.id;
  const scopes = Array.isArray(key.scopes) ? key.scopes.join(", ") : "";
  tr.append(
    cell(key.name),
    cell(scopes),
    cell(day(key.created_at), key.created_at),
    cell(day(key.expires_at), key.expires_at),
    cell(moment(key.last_used_at), key.last_used_at),
  );
  const action = document.createElement("td");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "secondary revoke";
  button.textContent = "Revoke";
  button.setAttribute("aria-label", `Revoke ${key.name}`);
  button.addEventListener("click", () => revoke(key, button));
  action.appendChild(button);
  tr.appendChild(action);
  return tr;
}

// Every page of the caller's keys (a person has few; the loop is bounded).
async function loadKeys() {
  const items = [];
  let cursor = null;
  for (let pages = 0; pages < 50; pages += 1) {
    const query = cursor ? `?limit=100&cursor=${encodeURIComponent(cursor)}` : "?limit=100";
    const { status, body } = await api(KEYS + query);
    if (signedOut(status)) return;
    if (status !== 200 || !body || !Array.isArray(body.items)) {
      $("keys-message").textContent = failure("Listing your API keys", status, body);
      return;
    }
    items.push(...body.items);
    cursor = body.next_cursor;
    if (!cursor) break;
  }
  $("keys").querySelector("tbody").replaceChildren(...items.map(keyRow));
  $("keys").hidden = items.length === 0;
  $("no-keys").hidden = items.length > 0;
}

async function revoke(key, button) {
  button.disabled = true;
  $("keys-message").textContent = "";
  const { status, body } = await api(`${KEYS}/${encodeURIComponent(key.id)}`, { method: "DELETE" });
  if (signedOut(status)) return;
  // 404: already gone (revoked in another tab); the list catches up.
  if (status !== 204 && status !== 404) {
    button.disabled = false;
    $("keys-message").textContent = failure(`Revoking ${key.name}`, status, body);
    return;
  }
  if ($("new-key-panel").dataset.id === key.id) hideNewKey();
  await loadKeys();
}

// --- Creating a key, and showing its secret once ---

const form = $("key-form");

function clearFormErrors() {
  for (const element of form.querySelectorAll(".field-error")) element.textContent = "";
  $("key-form-message").textContent = "";
}

// Shows each of a problem's field errors under its field (`scopes[1]` under
// the scopes); one naming no field here joins the form's message.
function showProblem(status, body) {
  $("key-form-message").textContent = failure("Creating the key", status, body);
  const errors = body && Array.isArray(body.errors) ? body.errors : [];
  const unplaced = [];
  for (const error of errors) {
    const field = String(error.field || "");
    const name = field.split(/[.[]/)[0];
    const target = [...form.querySelectorAll(".field-error")].find((element) => element.dataset.field === name);
    const text = `${field}: ${error.message}`;
    if (target) target.textContent = target.textContent ? `${target.textContent}; ${text}` : text;
    else unplaced.push(text);
  }
  if (unplaced.length) $("key-form-message").textContent += ` ${unplaced.join("; ")}`;
}

// The longest a key may live (`api_keys.max_lifetime`), in milliseconds.
const maxLifetime = Number($("key-expires").dataset.maxSeconds) * 1000;

// The chosen day, to its last second in the person's time zone, as RFC 3339;
// the last day allowed ends at the lifetime's end, not at midnight.
function endOfDay(value) {
  const [year, month, date] = value.split("-").map(Number);
  const end = new Date(year, month - 1, date, 23, 59, 59).getTime();
  return new Date(Math.min(end, Date.now() + maxLifetime - 60_000)).toISOString();
}

function showNewKey(created) {
  const panel = $("new-key-panel");
  panel.dataset.id = created.id;
  $("new-key").value = created.key;
  $("copy-status").textContent = "";
  panel.hidden = false;
  $("new-key").focus();
  $("new-key").select();
}

// The secret leaves the page once the person is done with it.
function hideNewKey() {
  const panel = $("new-key-panel");
  panel.hidden = true;
  delete panel.dataset.id;
  $("new-key").value = "";
  $("copy-status").textContent = "";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors();
  const request = {
    name: $("key-name").value,
    scopes: [...form.querySelectorAll('input[name="scopes"]:checked')].map((box) => box.value),
  };
  const expires = $("key-expires").value;
  if (expires) request.expires_at = endOfDay(expires);
  const button = $("create-key");
  button.disabled = true;
  const { status, body } = await api(KEYS, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(request),
  });
  button.disabled = false;
  if (signedOut(status)) return;
  if (status !== 201 || !body || typeof body.key !== "string") {
    showProblem(status, body);
    return;
  }
  form.reset();
  showNewKey(body);
  await loadKeys();
});

$("copy-key").addEventListener("click", async () => {
  const input = $("new-key");
  try {
    if (!navigator.clipboard || !window.isSecureContext) throw new Error("no clipboard");
    await navigator.clipboard.writeText(input.value);
    $("copy-status").textContent = "Copied.";
  } catch {
    // No clipboard access here (plain HTTP, or refused): select the key so
    // the person can copy it themselves.
    input.focus();
    input.select();
    $("copy-status").textContent = "Selected: press Ctrl+C (⌘C on a Mac) to copy.";
  }
});

$("new-key-done").addEventListener("click", hideNewKey);

// No day in the past: the earliest is today (the key then lives until its
// end); the latest is the last day the lifetime reaches.
{
  const pad = (number) => String(number).padStart(2, "0");
  const dateOf = (day) => `${day.getFullYear()}-${pad(day.getMonth() + 1)}-${pad(day.getDate())}`;
  $("key-expires").min = dateOf(new Date());
  $("key-expires").max = dateOf(new Date(Date.now() + maxLifetime));
}

// The new key leaves the page with it (and is not kept by the back button).
window.addEventListener("pagehide", hideNewKey);

loadKeys();

// --- Email verification (shown only while the address is not confirmed) ---

const sendVerification = $("send-verification");
if (sendVerification) {
  sendVerification.addEventListener("click", async () => {
    sendVerification.disabled = true;
    const { status, body } = await api("/auth/email/verify/request", { method: "POST" });
    if (signedOut(status)) return;
    $("verification-status").textContent =
      status === 202 ? "A link is on its way; it works for 24 hours." : failure("Sending the link", status, body);
    sendVerification.disabled = false;
  });
}

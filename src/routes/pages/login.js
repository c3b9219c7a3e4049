// Signs in with email and password through POST /auth/session, keeps the
// session's CSRF token where /account's script can read it, then opens
// `?next=` (a path on this site) or /account. With a second factor on, the
// password answers a challenge instead: the second-step form sends its
// code to POST /auth/mfa. A provider sign-in of such a user arrives here
// with `?mfa=<token>`, straight to the second step. "Sign in with a
// passkey" runs the browser's WebAuthn ceremony between POST
// /auth/passkey/start and /auth/passkey/finish (no email, no password); a
// passkey also serves as the second step. Errors are shown as the API's
// problem detail.
const form = document.getElementById("password-form");
const secondStep = document.getElementById("mfa-form");
const passkeyOption = document.getElementById("passkey-option");
const passkeyButton = document.getElementById("passkey-sign-in");
const mfaPasskeyButton = document.getElementById("mfa-passkey");
let mfaToken = null;
let mfaPasskeyOptions = null;
const webauthn =
  typeof window.PublicKeyCredential === "function" &&
  typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function";

// Where to go after signing in: `?next=` when it is a path (and query) on
// this site, else /account. Never "//host" or "/\\host" (browsers read both
// as another site), a control character, or anything that resolves to
// another origin.
function landing() {
  const next = new URLSearchParams(window.location.search).get("next");
  if (typeof next !== "string" || !next.startsWith("/") || next.startsWith("//")) return "/account";
  if (/[\\\u0000-\u001f\u007f]/.test(next)) return "/account";
  try {
    if (new URL(next, window.location.origin).origin !== window.location.origin) return "/account";
  } catch {
    return "/account";
  }
  return next;
}
const message = document.getElementById("message");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  message.textContent = "";
  await signInWith("/auth/session", { email: form.email.value, password: form.password.value });
});

async function postJson(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify(body),
  });
  return { response, answer: await response.json().catch(() => ({})) };
}

// The answer of a sign-in request, or null once the failure is shown.
async function post(path, body) {
  try {
    const { response, answer } = await postJson(path, body);
    if (response.ok) return answer;
    message.textContent = answer.detail || `Sign-in failed (${response.status}).`;
  } catch {
    message.textContent = "The server could not be reached.";
  }
  return null;
}

// One step of a sign-in: signed in, or on to the second step it asks for.
async function signInWith(path, body) {
  const answer = await post(path, body);
  if (!answer) return;
  if (answer.mfa_required) {
    askForSecondStep(answer.mfa_token, answer.methods, answer.passkey);
    return;
  }
  signedIn(answer);
}

function signedIn(answer) {
  document.cookie = `rampart_csrf=${encodeURIComponent(answer.csrf_token)}; Path=/; SameSite=Strict`;
  window.location.assign(landing());
}

// `methods` and `passkeyOptions` are unknown for a provider's `?mfa=`:
// the code step is offered then.
function askForSecondStep(token, methods, passkeyOptions) {
  mfaToken = token;
  mfaPasskeyOptions = passkeyOptions || null;
  const known = Array.isArray(methods);
  const byCode = !known || methods.includes("totp") || methods.includes("recovery_code");
  form.hidden = true;
  if (passkeyOption) passkeyOption.hidden = true;
  secondStep.hidden = false;
  document.getElementById("mfa-code-step").hidden = !byCode;
  mfaPasskeyButton.hidden = !(webauthn && mfaPasskeyOptions);
  if (byCode) document.getElementById("mfa-code").focus();
}

// Asks the authenticator for an assertion with the API's request options
// (JSON form); null when the person cancelled.
async function assertion(options) {
  try {
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options);
    const credential = await navigator.credentials.get({ publicKey });
    return credential ? credential.toJSON() : null;
  } catch (error) {
    message.textContent = error && error.name === "NotAllowedError"
      ? "The passkey request was cancelled or timed out."
      : "This browser could not use a passkey here.";
    return null;
  }
}

mfaPasskeyButton.addEventListener("click", async () => {
  message.textContent = "";
  const credential = await assertion(mfaPasskeyOptions);
  if (credential) await signInWith("/auth/mfa", { mfa_token: mfaToken, passkey: credential });
});

if (passkeyOption && webauthn) {
  passkeyOption.hidden = false;
  passkeyButton.addEventListener("click", async () => {
    message.textContent = "";
    const started = await post("/auth/passkey/start", {});
    const credential = started && (await assertion(started));
    if (credential) {
      await signInWith("/auth/passkey/finish", { challenge_id: started.challenge_id, credential, session: true });
    }
  });
}

secondStep.addEventListener("submit", async (event) => {
  event.preventDefault();
  message.textContent = "";
  const typed = document.getElementById("mfa-code").value.trim();
  if (!typed) {
    message.textContent = "Enter a code.";
    return;
  }
  // Six digits are an app's code; anything else is taken for a recovery code.
  const step = /^[0-9]{6}$/.test(typed) ? { code: typed } : { recovery_code: typed };
  await signInWith("/auth/mfa", Object.assign({ mfa_token: mfaToken }, step));
});

// A provider sign-in's second step: the token leaves the address bar (and
// the history) at once.
{
  const params = new URLSearchParams(window.location.search);
  const token = params.get("mfa");
  if (token) {
    params.delete("mfa");
    const rest = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (rest ? `?${rest}` : ""));
    askForSecondStep(token);
    // What this challenge takes (the token came alone): a passkey's options.
    postJson("/auth/mfa/options", { mfa_token: token })
      .then(({ response, answer }) => {
        if (response.ok) askForSecondStep(token, answer.methods, answer.passkey);
      })
      .catch(() => {});
  }
}

// Signs in with email and password through POST /auth/session, keeps the
// session's CSRF token where /account's script can read it, then opens
// `?next=` (a path on this site) or /account. With a second factor on, the
// password answers a challenge instead: the second-step form sends its
// code to POST /auth/mfa. A provider sign-in of such a user arrives here
// with `?mfa=<token>`, straight to the second step. Errors are shown as the
// API's problem detail.
const form = document.getElementById("password-form");
const secondStep = document.getElementById("mfa-form");
let mfaToken = null;

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
  const body = JSON.stringify({ email: form.email.value, password: form.password.value });
  try {
    const response = await fetch("/auth/session", {
      method: "POST",
      headers: { "content-type": "application/json" },
      credentials: "same-origin",
      body,
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      message.textContent = answer.detail || `Sign-in failed (${response.status}).`;
      return;
    }
    if (answer.mfa_required) {
      askForSecondStep(answer.mfa_token);
      return;
    }
    signedIn(answer);
  } catch {
    message.textContent = "The server could not be reached.";
  }
});

function signedIn(answer) {
  document.cookie = `rampart_csrf=${encodeURIComponent(answer.csrf_token)}; Path=/; SameSite=Strict`;
  window.location.assign(landing());
}

function askForSecondStep(token) {
  mfaToken = token;
  form.hidden = true;
  secondStep.hidden = false;
  document.getElementById("mfa-code").focus();
}

secondStep.addEventListener("submit", async (event) => {
  event.preventDefault();
  message.textContent = "";
  const typed = document.getElementById("mfa-code").value.trim();
  // Six digits are an app's code; anything else is taken for a recovery code.
  const step = /^[0-9]{6}$/.test(typed) ? { code: typed } : { recovery_code: typed };
  try {
    const response = await fetch("/auth/mfa", {
      method: "POST",
      headers: { "content-type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(Object.assign({ mfa_token: mfaToken }, step)),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      message.textContent = answer.detail || `Sign-in failed (${response.status}).`;
      return;
    }
    signedIn(answer);
  } catch {
    message.textContent = "The server could not be reached.";
  }
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
  }
}

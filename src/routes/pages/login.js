// Signs in with email and password through POST /auth/session, keeps the
// session's CSRF token where /account's script can read it, then opens
// `?next=` (a path on this site) or /account. Errors are shown as the
// API's problem detail.
const form = document.getElementById("password-form");

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
    document.cookie = `rampart_csrf=${encodeURIComponent(answer.csrf_token)}; Path=/; SameSite=Strict`;
    window.location.assign(landing());
  } catch {
    message.textContent = "The server could not be reached.";
  }
});

// Signs in with email and password through POST /auth/session, keeps the
// session's CSRF token where /account's script can read it, then opens
// /account. Errors are shown as the API's problem detail.
const form = document.getElementById("password-form");

// Where to go after signing in: `?next=` when it is one of the pages here
// (never another site), else /account.
function landing() {
  const next = new URLSearchParams(window.location.search).get("next");
  return next === "/admin" ? "/admin" : "/account";
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

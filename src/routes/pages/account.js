// "Sign out": DELETE /auth/session with the session's CSRF token (from the
// rampart_csrf cookie), then back to /login.
const button = document.getElementById("sign-out");
const message = document.getElementById("message");

function csrfToken() {
  const pair = document.cookie.split("; ").find((entry) => entry.startsWith("rampart_csrf="));
  return pair ? decodeURIComponent(pair.slice("rampart_csrf=".length)) : "";
}

button.addEventListener("click", async () => {
  const response = await fetch("/auth/session", {
    method: "DELETE",
    headers: { "x-csrf-token": csrfToken() },
    credentials: "same-origin",
  }).catch(() => null);
  if (response && (response.ok || response.status === 401)) {
    document.cookie = "rampart_csrf=; Path=/; Max-Age=0; SameSite=Strict";
    window.location.assign("/login");
  } else {
    message.textContent = "Signing out failed; reload the page and try again.";
  }
});

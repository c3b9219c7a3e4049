// /verify-email and /reset-password: each posts its form to the API. The
// link's token comes from the query string and goes only into the JSON
// body of the POST; errors are shown as the API's problem (the field
// message when there is one).
const message = document.getElementById("message");
const done = document.getElementById("done");
const token = new URLSearchParams(window.location.search).get("token") || "";

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  return { response, answer };
}

function problem(answer, status) {
  const first = Array.isArray(answer.errors) ? answer.errors[0] : null;
  if (first && first.message) return first.message;
  return answer.detail || `The request failed (${status}).`;
}

// Runs `call` for a form's submit, showing `success` (the element id of the
// finished view) when it answers 2xx.
function wire(form, call, success) {
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const { response, answer } = await call(form);
      if (response.ok) {
        form.hidden = true;
        document.getElementById(success).hidden = false;
      } else {
        message.textContent = problem(answer, response.status);
      }
    } catch {
      message.textContent = "The server could not be reached.";
    } finally {
      button.disabled = false;
    }
  });
}

wire(document.getElementById("verify-form"), () => post("/auth/email/verify", { token }), "done");
wire(document.getElementById("forgot-form"), (form) => post("/auth/password/forgot", { email: form.email.value }), "done");
wire(
  document.getElementById("reset-form"),
  (form) => {
    if (form.password.value !== form.confirm.value) {
      return Promise.resolve({ response: { ok: false, status: 400 }, answer: { detail: "The two passwords differ." } });
    }
    return post("/auth/password/reset", { token, password: form.password.value });
  },
  "done",
);

// A verification link confirms on opening: nothing to type.
const verify = document.getElementById("verify-form");
if (verify && token) verify.requestSubmit();

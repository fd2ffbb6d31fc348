// login.js: sign in with fetch (POST /v1/sessions), then go to `next`,
// a same-origin path only (checked again here: the attribute is the
// server's, the address bar is anyone's).

import { $, api, ApiError } from "./common.js";

const root = $("#login-page");

function safeNext(n) {
  return typeof n === "string" && n.startsWith("/") && !n.startsWith("//") && !n.startsWith("/\\") ? n : "/";
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const err = $("#login-error");
  err.textContent = "";
  const button = ev.target.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    await api("/v1/sessions", {
      method: "POST",
      body: { username: $("#username").value.trim(), password: $("#password").value },
    });
    location.assign(safeNext(root.dataset.next));
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 400 || e.status === 422)) {
      err.textContent = "Wrong username or password.";
    } else if (e instanceof ApiError && e.status === 429) {
      err.textContent = "Too many attempts. Wait a little and try again.";
    } else {
      err.textContent = e instanceof ApiError ? e.message : "Cannot reach the server.";
    }
    $("#password").select();
  } finally {
    button.disabled = false;
  }
});

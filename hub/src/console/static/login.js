// The login form: POST /api/login, then back to where the user was going.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    try {
      await invigil.api("POST", "/api/login", { user: f.get("user"), password: f.get("password") });
      const next = new URLSearchParams(location.search).get("next");
      // Only a path on this hub: never an open redirect.
      location.href = next && next.startsWith("/") && !next.startsWith("//") ? next : "/console";
    } catch (e) {
      document.getElementById("error").textContent = e.message;
    }
  });
});

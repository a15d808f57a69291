// shop.js - the button experiment: one request chooses both experiments
// (one cookie, one pull each), the click rewards both and goes to the
// thank-you page through mabd's guarded redirect.
"use strict";
fetch("/v1/choose/color_btn,txt_btn", {credentials: "same-origin"})
  .then(r => r.json())
  .then(a => {
    const button = document.getElementById("buy");
    button.style.background = a.color_btn.value;
    button.textContent = a.txt_btn.value;
    button.href = "/r/color_btn,txt_btn?to=" + encodeURIComponent("/shop/thanks.html");
    document.getElementById("assignment").textContent =
      `color_btn: ${a.color_btn.arm} · txt_btn: ${a.txt_btn.arm}`;
  })
  .catch(e => { document.getElementById("assignment").textContent = "mabd: " + e; });

// The order page's times in the reader's own time zone (the server renders UTC as the
// fallback). A file, not an inline script: the admin's Content-Security-Policy allows
// scripts from the shop's own origin only.
document.querySelectorAll("time.local-time").forEach(function (el) {
  var when = new Date(el.getAttribute("datetime"));
  if (!isNaN(when)) {
    el.textContent = when.toLocaleString(undefined, {dateStyle: "medium", timeStyle: "short"});
  }
});

// Starts the vendored Swagger UI on /api/v1/docs (a file, not inline: the CSP allows no
// inline script). validatorUrl null: the badge would send the description to an outside
// service, and the page must work offline.
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    tryItOutEnabled: false,
    persistAuthorization: false,
  });
});

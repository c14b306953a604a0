"""HTTP plumbing both services share: JSON errors, body limits, request ids, the request
log, serving, and the OpenAPI documents."""

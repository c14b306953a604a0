"""The builder service: the relying party of the issuer's tokens (issue 5).

It verifies a fork pull-request token against the issuers it is configured to trust,
applies the operator's trust relationships, and exchanges the token (RFC 8693) for a build
token bound to one ephemeral builder. Each piece is a module any builder service can import:

- :mod:`issuer.builder.verify`: RFC 8725 token verification (keys through :mod:`.jwks`).
- :mod:`issuer.builder.relationships`, :mod:`issuer.builder.policy`: trust relationships,
  validated strictly and evaluated with a reason for every outcome.
- :mod:`issuer.builder.backend`, :mod:`issuer.builder.process`: ephemeral builders, each
  its own process (:mod:`.worker`) building images (:mod:`.imagebuild`) with buildah in a
  sandbox (:mod:`.sandbox`, :mod:`.confine`); base images checked (:mod:`.dockerfile`), the
  image verified (:mod:`.oci`) and pushed (:mod:`.push`) by the builder's trusted side.
- :mod:`issuer.builder.exchange`: the exchange itself, from token to builder.

This module imports nothing, so that a builder process (:mod:`.worker`) starts quickly.
"""

"""The issuer service: claims, the run watcher, the challenge, signing keys and tokens."""

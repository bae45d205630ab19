"""One module per step of the tutorial; each exposes ``apply(...)``, a pyinfra deploy."""

"""The deploy's Jinja2 templates: installed as the package data ``hakube.templates`` (see pyproject.toml)."""

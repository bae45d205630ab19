"""Files the deploy installs as they are: installed as the package data ``hakube.files`` (see pyproject.toml)."""

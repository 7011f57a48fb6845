"""Installed by editable installs only, so discovery tools can map the distribution to
``chaos_dynamo`` (see hatch_build.py). Never imported."""

"""The fault suite (see README, What survives what): a package, so that its conftest is its own."""

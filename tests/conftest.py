pytest_plugins = [
    "tests.servers.gcs",
    "tests.servers.samba",
    "tests.servers.slapd",
    "tests.servers.browser",
]

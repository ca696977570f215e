pytest_plugins = [
    "tests.servers.gcs",
    "tests.servers.azure",
    "tests.servers.s3",
    "tests.servers.sftp",
    "tests.servers.samba",
    "tests.servers.slapd",
    "tests.servers.browser",
]

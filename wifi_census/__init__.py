"""wifi_census: the top package (command line, demo, local servers, AP provisioning).

It may import every other package; none imports it (docs/architecture.md).
"""

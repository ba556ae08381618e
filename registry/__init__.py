"""The registry: communities, units, access points, residents, devices, utilities, staff and
cases, in SQL (SQLite by default, PostgreSQL by URL), shared by every part of wifi-census."""

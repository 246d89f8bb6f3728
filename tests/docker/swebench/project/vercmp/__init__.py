"""Version strings: the newest of a list, and bumping one part."""

from packaging.version import Version


def newest(versions):
    """The highest of ``versions`` (strings such as "1.10.0")."""
    return max(versions)


def bump(version, part):
    """``version`` with ``part`` ("major", "minor" or "patch") raised by one."""
    v = Version(version)
    major, minor, patch = v.major, v.minor, v.micro
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.{patch}"
    if part == "patch":
        return f"{major}.{minor}.{patch + 1}"
    raise ValueError(f"unknown part: {part}")

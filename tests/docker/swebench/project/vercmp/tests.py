from vercmp import bump, newest


def test_newest_single_digits():
    assert newest(["1.2.0", "1.3.0", "1.1.0"]) == "1.3.0"


def test_bump_patch():
    assert bump("1.2.3", "patch") == "1.2.4"


def test_bump_major():
    assert bump("1.2.3", "major") == "2.0.0"

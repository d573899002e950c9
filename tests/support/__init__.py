"""What several test folders share: doubles of modelyard's own interfaces (scripted and
endless engines), a real Redis, a failed call's trailers, and the fakes of the hosted
providers that cannot run here (``fake_<kind>.py``: each follows its provider's published
API reference, named with its version in the fake's docstring)."""

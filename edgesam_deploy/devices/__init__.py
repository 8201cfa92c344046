"""Benchmark devices: packaged and user profiles, and whether each one can be reached now."""
from .profiles import PACKAGED, PROFILES_ENV, DeviceProfile, ProfileError, get_profile, load_profiles, select_artifacts

__all__ = ["PACKAGED", "PROFILES_ENV", "DeviceProfile", "ProfileError", "get_profile", "load_profiles", "select_artifacts"]

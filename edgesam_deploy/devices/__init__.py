"""Benchmark devices: packaged and user profiles, and whether each one can be reached now."""
from .profiles import (
    EMULATED, PACKAGED, PROFILES_ENV, DeviceProfile, ProfileError, get_profile, load_profiles,
    select_artifacts,
)

__all__ = [
    "EMULATED", "PACKAGED", "PROFILES_ENV", "DeviceProfile", "ProfileError", "get_profile",
    "load_profiles", "select_artifacts",
]

"""System checks: what running more than one process of the platform needs."""

from django.core.checks import registry

from apps.core.checks import shared_cache_check


def test_a_cache_local_to_each_process_is_a_deploy_warning(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    [warning] = shared_cache_check()
    assert warning.id == "pandastack.W001"
    assert "REDIS_URL" in warning.hint
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    assert shared_cache_check() == []
    # Run by `manage.py check --deploy` (scripts/test fails on its warnings), not by every command.
    assert shared_cache_check in registry.registry.get_checks(include_deployment_checks=True)
    assert shared_cache_check not in registry.registry.get_checks()

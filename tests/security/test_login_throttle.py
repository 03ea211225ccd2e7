"""Password guessing against the operators' admin login is throttled, per username and per client
address, with the counters in the real cache (Redis in CI, shared by every web worker).

There is no password login in the REST API: API clients authenticate with bearer tokens only (high-
entropy, stored hashed) and the API's session authentication accepts only sessions the admin login
created — so the admin login is the one door a password goes through, and the throttle sits under
`django.contrib.auth.authenticate()` itself (ThrottledModelBackend), so any later password login is
throttled the same way. Before the fix, any number of wrong passwords could be tried and a correct one
was accepted right after."""

import time

import pytest
from django.contrib.auth import authenticate
from django.core.cache import cache
from django.test import Client

from apps.accounts.models import User
from apps.core.api.errors import exception_handler

LOGIN = "/admin/login/"
PASSWORD = "Correct-horse-battery-9"


@pytest.fixture
def operator(db) -> User:
    return User.objects.create_superuser(username="root", email="root@example.com", password=PASSWORD)


def login(client: Client, username: str, password: str):
    return client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"})


def logged_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def test_wrong_passwords_for_one_username_lock_it_until_the_window_ends(operator, settings):
    settings.PANDASTACK_LOGIN_MAX_FAILURES_PER_USERNAME = 5
    settings.PANDASTACK_LOGIN_THROTTLE_WINDOW_SECONDS = 3
    assert cache.get("login-fail:probe") is None  # the real cache answers
    client = Client(REMOTE_ADDR="203.0.113.7")
    for attempt in range(5):
        response = login(client, "root" if attempt % 2 else "ROOT", f"guess-{attempt}")  # counted case-blind
        assert response.status_code == 200 and "Please enter the correct" in response.content.decode()
    # The sixth try, even with the right password, is refused without checking it...
    response = login(client, "root", PASSWORD)
    assert not logged_in(response)
    assert "Too many failed logins" in response.content.decode()
    # ...from another address too (the username is what is being guessed)...
    assert not logged_in(login(Client(REMOTE_ADDR="198.51.100.9"), "root", PASSWORD))
    # ...and by every other caller of authenticate().
    assert authenticate(None, username="root", password=PASSWORD) is None
    # After the window, the right password works again and clears the count.
    time.sleep(3.5)
    assert logged_in(login(Client(REMOTE_ADDR="203.0.113.7"), "root", PASSWORD))


def test_one_address_guessing_many_usernames_is_throttled(operator, settings):
    settings.PANDASTACK_LOGIN_MAX_FAILURES_PER_ADDRESS = 20
    settings.PANDASTACK_LOGIN_THROTTLE_WINDOW_SECONDS = 3
    attacker = Client(REMOTE_ADDR="203.0.113.66")
    for n in range(20):
        assert login(attacker, f"user{n}", "guess").status_code == 200
    response = login(attacker, "root", PASSWORD)
    assert not logged_in(response) and "Too many failed logins" in response.content.decode()
    # A client-written X-Forwarded-For does not buy a fresh address.
    spoofed = Client(REMOTE_ADDR="203.0.113.66", HTTP_X_FORWARDED_FOR="192.0.2.1")
    assert not logged_in(login(spoofed, "root", PASSWORD))
    # The operator at another address is not locked out by the attacker.
    assert logged_in(login(Client(REMOTE_ADDR="198.51.100.10"), "root", PASSWORD))
    time.sleep(3.5)
    assert logged_in(login(attacker, "root", PASSWORD))


def test_throttled_login_in_the_api_is_a_429_with_the_stable_error_shape(operator, settings, rf):
    """For any API path that checks a password: the typed error becomes the one JSON shape."""
    from apps.accounts.throttling import LoginThrottled, login_throttle_check

    settings.PANDASTACK_LOGIN_MAX_FAILURES_PER_USERNAME = 2
    request = rf.post("/api/v1/anything/", REMOTE_ADDR="203.0.113.8")
    for _ in range(2):
        assert authenticate(request, username="root", password="wrong") is None
    with pytest.raises(LoginThrottled) as caught:
        login_throttle_check(username="root", request=request)
    response = exception_handler(caught.value, {"request": request})
    assert response.status_code == 429
    error = response.data["error"]
    assert error["code"] == "throttled" and 0 < error["retry_after"] <= 301
    assert set(error) >= {"code", "message", "fields", "request_id"}

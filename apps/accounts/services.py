from django.db import transaction

from apps.accounts.models import User


def user_get_or_create_by_email(*, email: str) -> tuple[User, bool]:
    """Find the person with this e-mail (case-insensitive), or create one with no usable password
    (they set one through the password reset flow or log in through SSO later)."""
    email = User.objects.normalize_email(email).strip()
    existing = User.objects.filter(email__iexact=email, is_service_account=False).first()
    if existing:
        return existing, False
    with transaction.atomic():
        user = User(username=email.lower(), email=email)
        user.set_unusable_password()
        user.full_clean()
        user.save()
    return user, True

"""Provisioners: one per engine, one interface (base.Provisioner). `provisioner_for` picks one."""

from apps.databases.provisioners.base import DatabaseSpec, Provisioner, ProvisionerError, Usage, provisioner_for

__all__ = ["DatabaseSpec", "Provisioner", "ProvisionerError", "Usage", "provisioner_for"]

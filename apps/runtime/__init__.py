"""Drivers for the outside world (the container engine, the router), each behind one small interface."""

"""Maintenance jobs and their schedules."""

"""Kept for imports of ``kdistill.teacher`` (the trainer, older code): the teachers live in ``kdistill.teachers``."""

from kdistill.teachers import FrozenModule, LiveTeacher, Teacher, teacher_view

__all__ = ["FrozenModule", "LiveTeacher", "Teacher", "teacher_view"]

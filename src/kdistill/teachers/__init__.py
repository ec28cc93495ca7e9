"""Teacher kinds (``teacher.kind``), one module each; this file registers them, one line each."""

from kdistill.cache.teacher import CachedTeacher
from kdistill.teachers.base import TEACHERS, FrozenModule, Teacher, build_teacher, teacher_view
from kdistill.teachers.model import LiveTeacher
from kdistill.teachers.soft_labels import SoftLabelsTeacher

TEACHERS.register("model")(LiveTeacher)
TEACHERS.register("cache")(CachedTeacher)
TEACHERS.register("soft-labels")(SoftLabelsTeacher)

__all__ = ["TEACHERS", "CachedTeacher", "FrozenModule", "LiveTeacher", "SoftLabelsTeacher", "Teacher",
           "build_teacher", "teacher_view"]

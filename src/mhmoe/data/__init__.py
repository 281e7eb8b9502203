"""Task data: the TRACE on-disk format (one loader for real TRACE and the built-in stream)."""

from mhmoe.data.trace import Example, Task, load_stream, load_task

__all__ = ["Example", "Task", "load_stream", "load_task"]

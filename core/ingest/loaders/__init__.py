"""Loaders turn a file into ordered, located text segments.

``detect_kind`` looks at the content (magic bytes, container layout, text
shape) and only falls back on the extension to break ties between text
formats. ``load_file`` dispatches to the loader for that kind. Each loader
converts library exceptions into ImpError subclasses.
"""

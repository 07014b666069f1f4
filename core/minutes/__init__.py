"""Meeting minutes: from a meeting's turns to structured minutes with verbatim evidence."""

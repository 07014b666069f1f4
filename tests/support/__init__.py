"""Real third-party servers started for tests (not fakes): llama.cpp on 127.0.0.1."""

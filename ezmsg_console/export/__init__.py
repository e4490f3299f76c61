"""Headless tools: snapshot documents and their formats, scripted get/set, event watching."""

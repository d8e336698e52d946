"""The email channel: a digest rendered (render, fragments, mime), signed (dkim), sent (transport), and what
comes back (bounces)."""

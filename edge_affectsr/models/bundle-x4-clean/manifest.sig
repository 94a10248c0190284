{
  "algorithm": "ed25519",
  "key_id": "b82eff70806a334e",
  "signature": "3winmLmVfHnGsGRvxsS/EryGGQoxFLsBQbloGL9fje3wemeef41xMLaj0GaNsumIaxw4YKcKa2qzJNhNvJA6DA=="
}

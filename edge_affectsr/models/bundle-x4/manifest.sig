{
  "algorithm": "ed25519",
  "key_id": "b82eff70806a334e",
  "signature": "kmlgaQhN9pppmhIWxoi0UX6URRngK97OZAFU3b6A4nOjL/f7r1ybs/36hwNcD8wErCn2gpNy6THu+sLggK7jDg=="
}

{
  "algorithm": "ed25519",
  "key_id": "b82eff70806a334e",
  "signature": "ma1U8BaJ9rym/uX24LpRnZwFN+ga1IumRv3So6nUy4zMG8jjl+NiY7GPj37lhgccKYZSyCNv9FaiMEkyN3s1BA=="
}

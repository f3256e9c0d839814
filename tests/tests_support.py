from dataclasses import dataclass


@dataclass
class TinyCfg:
    width: int = 4
    name: str = "tiny"
    scale: float = 1.0

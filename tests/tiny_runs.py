"""The settings of a tiny continual-learning run (a random tiny model, built-in tasks, a few steps of 4), for
`load_config(None, ...)`: each test file adds its own methods and options."""


def tiny_run(
    tasks: list[str], *, train: int = 16, test: int = 6, steps: int = 3, model: str = "tiny:llama"
) -> list[str]:
    return [
        f"model.name={model}",
        f"data.order=[{', '.join(tasks)}]",
        f"data.train_size={train}",
        f"data.test_size={test}",
        f"train.max_steps={steps}",
        "train.batch_size=4",
        "train.lr=1e-2",
        "progress=false",
    ]

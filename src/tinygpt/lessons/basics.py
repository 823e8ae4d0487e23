"""Lesson: the pieces under every neural network, with the beginner tutorial's own numbers.

Read this file from top to bottom, or run it (`tinygpt lesson basics`, or
`python -m tinygpt.lessons.basics`) beside the tutorial: every number it prints is one the
tutorial prints (SPEC 1, "worked numbers"), so the two can be checked against each other.

1. One neuron: multiply each input by its weight, add a bias, pass the sum through ReLU.
2. A 2-2-1 network: two such neurons side by side (the hidden layer) feed one output neuron,
   with the tutorial's weights. One hidden unit's sum is negative, so ReLU silences it (a dead unit).
3. Squared-error loss: one number that says how far the output is from the target 1.0.
4. The chain rule by hand for the output weight of h1, checked against PyTorch's autograd, and one
   update with learning rate 0.1, with the loss before and after.
5. Gradient descent on L(w) = (w - 3)^2: one step uphill against one step downhill, then eight
   steps downhill from w = 0.
6. The same network in PyTorch (`nn.Linear`, `torch.optim.SGD`) under `torch.manual_seed(42)`,
   trained for 10 epochs toward the target.

A GPT is these same pieces at a much larger scale: millions of weights instead of nine, and a
loss over next-token predictions instead of one target, but the same forward pass, loss, backward
pass and update.

Where the tutorial's text and its numbers part: its loss and backpropagation steps use a prediction
of 0.556, which its own forward pass (0.4420) does not give. The lesson prints the tutorial's
gradient (-0.4973) and update (0.7497), says where they come from, and prints the value consistent
with 0.4420 beside each.
"""

import torch
from torch import nn

# The tutorial's worked example, in one place so the printout, the hand calculation and the
# autograd check all start from the same values.
INPUTS = (0.8, 0.2)
NEURON_WEIGHTS, NEURON_BIAS = (0.6, -0.4), 0.1
HIDDEN_WEIGHTS = ((0.5, 0.3), (-0.2, 0.8))  # one row per hidden neuron: (from x1, from x2)
HIDDEN_BIASES = (0.1, -0.1)
OUTPUT_WEIGHTS = (0.7, 0.4)  # (from h1, from h2)
OUTPUT_BIAS = 0.05
TARGET = 1.0
LR = 0.1
# The prediction the tutorial's loss and backpropagation text uses (its forward pass gives 0.4420).
TUTORIAL_PREDICTION = 0.556

GD_TARGET = 3.0  # L(w) = (w - 3)^2
GD_COMPARE_FROM = 1.0
GD_FROM, GD_STEPS = 0.0, 8

TORCH_SEED, TORCH_EPOCHS = 42, 10


def _factor(v: float) -> str:
    """A number to print after a `*`: negatives in brackets, so "0.2*(-0.4)" and never "0.2*-0.4"."""
    return f"({v})" if v < 0 else f"{v}"


def _sum_text(terms) -> str:
    """Write a sum the way a person would: "0.48 - 0.08 + 0.1", not "0.48 + -0.08 + 0.1"."""
    text = f"{terms[0]}"
    for t in terms[1:]:
        text += f" - {-t}" if t < 0 else f" + {t}"
    return text


def relu(z: float) -> float:
    """Keep positive numbers, turn negative ones into 0: the simplest useful non-linearity."""
    return max(0.0, z)


def neuron(inputs, weights, bias: float) -> tuple[float, float]:
    """One neuron: the weighted sum of its inputs plus a bias (z), then ReLU. Returns (z, relu(z))."""
    z = sum(x * w for x, w in zip(inputs, weights)) + bias
    return z, relu(z)


def forward(output_weights=OUTPUT_WEIGHTS, inputs=INPUTS) -> dict:
    """The 2-2-1 network's forward pass in plain Python, keeping every intermediate value.
    The tutorial puts a ReLU on the output neuron too."""
    z1, h1 = neuron(inputs, HIDDEN_WEIGHTS[0], HIDDEN_BIASES[0])
    z2, h2 = neuron(inputs, HIDDEN_WEIGHTS[1], HIDDEN_BIASES[1])
    z_out, y = neuron((h1, h2), output_weights, OUTPUT_BIAS)
    return {"z1": z1, "h1": h1, "z2": z2, "h2": h2, "z_out": z_out, "y": y}


def squared_error(y: float, target: float = TARGET) -> float:
    """Squared error: always >= 0, zero only when the output hits the target, and smooth to differentiate."""
    return (y - target) ** 2


def _autograd_output_weight_gradient() -> float:
    """dL/d(w_out_h1) from PyTorch's autograd on the same network, in float64 so that it and the
    hand calculation (Python floats are 64-bit) agree to the last digits."""
    W1 = torch.tensor(HIDDEN_WEIGHTS, dtype=torch.float64)  # (2, 2): row i holds hidden neuron i's weights
    b1 = torch.tensor(HIDDEN_BIASES, dtype=torch.float64)  # (2,)
    W2 = torch.tensor(OUTPUT_WEIGHTS, dtype=torch.float64, requires_grad=True)  # (2,)
    x = torch.tensor(INPUTS, dtype=torch.float64)  # (2,)
    h = torch.relu(W1 @ x + b1)  # (2,) hidden activations
    y = torch.relu(W2 @ h + OUTPUT_BIAS)  # () the output
    ((y - TARGET) ** 2).backward()
    return W2.grad[0].item()


def gradient_descent(w: float, steps: int, lr: float = LR) -> list[tuple[float, float]]:
    """(w, L(w)) after each of `steps` steps against the slope dL/dw = 2(w - 3)."""
    table = []
    for _ in range(steps):
        w = w - lr * 2 * (w - GD_TARGET)
        table.append((w, (w - GD_TARGET) ** 2))
    return table


def torch_training() -> list[tuple[float, float]]:
    """The tutorial's PyTorch loop: (prediction, loss) at each epoch, before that epoch's update."""
    torch.manual_seed(TORCH_SEED)  # the tutorial's seed; it fixes nn.Linear's random initial weights
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))  # no ReLU on the output here
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    x = torch.tensor([INPUTS])  # (1, 2): a batch of one example
    target = torch.tensor([[TARGET]])  # (1, 1)
    epochs = []
    for _ in range(TORCH_EPOCHS):
        y = model(x)  # (1, 1)
        loss = nn.functional.mse_loss(y, target)
        optimizer.zero_grad()  # backward adds into .grad, so clear the last epoch's first
        loss.backward()
        optimizer.step()  # every weight <- weight - lr * its gradient
        epochs.append((y.item(), loss.item()))
    return epochs


def run(out=print) -> dict:
    """Print the lesson step by step and return its numbers."""
    x1, x2 = INPUTS

    # ---- 1. One neuron -------------------------------------------------------------------
    out("Step 1. One neuron")
    (w1, w2), b = NEURON_WEIGHTS, NEURON_BIAS
    z, a = neuron(INPUTS, NEURON_WEIGHTS, b)
    products = [round(x1 * w1, 4), round(x2 * w2, 4), b]
    out(f"  inputs {x1} and {x2}, weights {w1} and {w2}, bias {b}")
    out(f"  weighted sum z = {x1}*{_factor(w1)} + {x2}*{_factor(w2)} + {b} = {_sum_text(products)} = {z:.2f}")
    out(f"  ReLU keeps positive numbers: output = max(0, {z:.2f}) = {a:.2f}")

    # ---- 2. A 2-2-1 network --------------------------------------------------------------
    out("")
    out("Step 2. A 2-2-1 network: 2 inputs -> 2 hidden ReLU neurons -> 1 output (ReLU too)")
    fw = forward()
    for i, name in enumerate(("h1", "h2")):
        (wa, wb), bb = HIDDEN_WEIGHTS[i], HIDDEN_BIASES[i]
        products = [round(x1 * wa, 4), round(x2 * wb, 4), bb]
        out(f"  {name} = ReLU({x1}*{_factor(wa)} + {x2}*{_factor(wb)} {'-' if bb < 0 else '+'} {abs(bb)})"
            f" = ReLU({_sum_text(products)})"
            f" = ReLU({fw['z' + name[1]]:.2f}) = {fw[name]:.2f}")
    out("  h2's sum is negative, so ReLU outputs 0: a 'dead' unit. It passes nothing on, and (ReLU's slope")
    out("  being 0 there) no gradient comes back through it, so its weights do not learn from this example.")
    v1, v2 = OUTPUT_WEIGHTS
    products = [round(v1 * fw["h1"], 4), round(v2 * fw["h2"], 4), OUTPUT_BIAS]
    out(f"  y  = ReLU({v1}*h1 + {v2}*h2 + {OUTPUT_BIAS}) = ReLU({v1}*{fw['h1']:.2f} + {v2}*{fw['h2']:.0f}"
        f" + {OUTPUT_BIAS}) = ReLU({_sum_text(products)}) = {fw['y']:.4f}")

    # ---- 3. Squared-error loss -----------------------------------------------------------
    out("")
    out("Step 3. Squared-error loss against the target 1.0")
    loss = squared_error(fw["y"])
    tutorial_loss = squared_error(TUTORIAL_PREDICTION)
    out(f"  loss = ({TARGET} - {fw['y']:.4f})^2 = {TARGET - fw['y']:.4f}^2 = {loss:.4f}")
    out(f"  note: the tutorial prints ({TARGET} - {TUTORIAL_PREDICTION:.4f})^2 = {tutorial_loss:.4f} here,"
        f" from a prediction of {TUTORIAL_PREDICTION:.4f} that its forward pass does not give;"
        f" {fw['y']:.4f} gives {loss:.4f}")

    # ---- 4. The chain rule by hand, checked by autograd, and one update ----------------------
    # The output weight of h1 reaches the loss through two links: it moves z_out by h1 per unit,
    # z_out moves y by ReLU's slope (1, since z_out > 0), y moves the loss by 2(y - target).
    out("")
    out("Step 4. The chain rule for w_out_h1 (the output weight from h1, 0.7), and one update")
    relu_slope = 1.0 if fw["z_out"] > 0 else 0.0
    tutorial_dL_dy = 2 * (TUTORIAL_PREDICTION - TARGET)
    tutorial_grad = tutorial_dL_dy * relu_slope * fw["h1"]
    dL_dy = 2 * (fw["y"] - TARGET)
    grad = dL_dy * relu_slope * fw["h1"]
    autograd_grad = _autograd_output_weight_gradient()
    out("  dL/dw = dL/dy * dy/dz * dz/dw = 2(y - target) * ReLU'(z) * h1")
    out(f"  the tutorial's numbers (y = {TUTORIAL_PREDICTION}): dL/dy = -2 x {TARGET - TUTORIAL_PREDICTION:.4f}"
        f" = {tutorial_dL_dy:.4f}; dL/dw = ({tutorial_dL_dy:.4f}) x {relu_slope} x {fw['h1']:.2f}"
        f" = {tutorial_grad:.4f}")
    out(f"  with this network's y = {fw['y']:.4f}: dL/dy = {dL_dy:.4f}; dL/dw = ({dL_dy:.4f}) x {relu_slope}"
        f" x {fw['h1']:.2f} = {grad:.4f}; torch autograd gives {autograd_grad:.4f}")

    def update(gradient: float) -> dict:
        w_new = OUTPUT_WEIGHTS[0] - LR * gradient
        after = forward((w_new, OUTPUT_WEIGHTS[1]))
        return {"weight": w_new, "output": after["y"], "loss": squared_error(after["y"])}

    step = update(tutorial_grad)
    consistent = update(grad)
    out(f"  update, learning rate {LR}: w <- {OUTPUT_WEIGHTS[0]} - {LR} x ({tutorial_grad:.4f}) = {step['weight']:.4f};"
        f" forward again: y {fw['y']:.4f} -> {step['output']:.4f}, loss {loss:.4f} -> {step['loss']:.4f}")
    out(f"  (with the consistent gradient {grad:.4f}: w -> {consistent['weight']:.4f}, y -> {consistent['output']:.4f},"
        f" loss -> {consistent['loss']:.4f}; either way one step downhill lowers the loss)")

    # ---- 5. Gradient descent on L(w) = (w - 3)^2 ---------------------------------------------
    # The slope 2(w - 3) is negative left of 3, so stepping against it moves w toward 3. With
    # learning rate 0.1 each step removes 20% of the remaining distance: w - 3 is multiplied by 0.8.
    out("")
    out(f"Step 5. Gradient descent on L(w) = (w - 3)^2, learning rate {LR}")
    slope = 2 * (GD_COMPARE_FROM - GD_TARGET)
    uphill_w, downhill_w = GD_COMPARE_FROM + LR * slope, GD_COMPARE_FROM - LR * slope
    uphill = {"w": uphill_w, "loss": (uphill_w - GD_TARGET) ** 2}
    downhill = {"w": downhill_w, "loss": (downhill_w - GD_TARGET) ** 2}
    out(f"  at w = {GD_COMPARE_FROM} the slope is 2 x ({GD_COMPARE_FROM} - 3) = {slope},"
        f" loss {(GD_COMPARE_FROM - GD_TARGET) ** 2}")
    out(f"  a step with the slope (uphill):     w = {uphill['w']:.1f}, loss {uphill['loss']:.2f}")
    out(f"  a step against the slope (downhill): w = {downhill['w']:.1f}, loss {downhill['loss']:.2f}")
    out(f"  eight steps downhill from w = {GD_FROM:g}:")
    table = gradient_descent(GD_FROM, GD_STEPS)
    for i, (w, step_loss) in enumerate(table, start=1):
        out(f"    step {i}: w = {w:.4f}, loss {step_loss:.4f}")

    # ---- 6. The same network in PyTorch ------------------------------------------------------
    out("")
    out(f"Step 6. The network in PyTorch: torch.manual_seed({TORCH_SEED}), nn.Linear(2, 2) -> ReLU -> nn.Linear(2, 1),")
    out(f"  SGD at {LR}, MSE against {TARGET}, {TORCH_EPOCHS} epochs (random initial weights, so new numbers)")
    epochs = torch_training()
    for i, (y, epoch_loss) in enumerate(epochs):
        out(f"    epoch {i}: prediction {y:.4f}, loss {epoch_loss:.4f}")
    out("  each epoch is the whole recipe: forward pass, loss, backward pass, update.")

    return {
        "neuron": {"z": z, "output": a},
        "hidden_sums": [fw["z1"], fw["z2"]],
        "hidden": [fw["h1"], fw["h2"]],
        "output": fw["y"],
        "loss": loss,
        "tutorial": {"prediction": TUTORIAL_PREDICTION, "loss": tutorial_loss, "dL_dy": tutorial_dL_dy,
                     "gradient": tutorial_grad, "update": step},
        "gradient": grad,
        "autograd_gradient": autograd_grad,
        "update": consistent,
        "uphill": uphill,
        "downhill": downhill,
        "descent": [{"w": w, "loss": step_loss} for w, step_loss in table],
        "torch_epochs": [{"prediction": y, "loss": epoch_loss} for y, epoch_loss in epochs],
    }


if __name__ == "__main__":
    run()

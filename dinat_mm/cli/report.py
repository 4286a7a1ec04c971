"""What tools/test.py prints after a classification run: top-1/top-5 and, when the config's
evaluators include mmpretrain's ConfusionMatrix, the matrix with each class's recall and the
most frequent confusions."""
from __future__ import annotations

from typing import Dict, Sequence


def classification_summary(metrics: Dict, classes: Sequence[str]) -> str:
    lines = []
    top = [f'{name} {metrics[key]:.1f} %' for name, key in (('top-1', 'accuracy/top1'), ('top-5', 'accuracy/top5'))
           if key in metrics]
    if top:
        lines.append('   '.join(top))
    matrix = metrics.get('confusion_matrix/result')
    if matrix is not None:
        matrix = matrix.tolist()
        names = list(classes) if len(classes) == len(matrix) else [str(i) for i in range(len(matrix))]
        width = max(6, *(len(n) for n in names))
        lines.append(f'{len(names)} classes, {sum(map(sum, matrix))} images; rows: true class, columns: predicted')
        lines.append(' ' * width + ''.join(f' {n:>{width}}' for n in names) + f' {"recall":>{width}}')
        for i, (name, row) in enumerate(zip(names, matrix)):
            recall = 100 * row[i] / max(1, sum(row))
            lines.append(f'{name:>{width}}' + ''.join(f' {v:>{width}}' for v in row) + f' {recall:>{width - 1}.1f}%')
        confusions = sorted(((matrix[i][j], names[i], names[j]) for i in range(len(names)) for j in range(len(names))
                             if i != j and matrix[i][j]), reverse=True)
        lines.append('most confused: ' + (', '.join(f'{t} as {p} ({n})' for n, t, p in confusions[:3]) or 'none'))
    return '\n'.join(lines)

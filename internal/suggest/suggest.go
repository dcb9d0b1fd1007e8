// Package suggest finds the known word a misspelt one was meant to be,
// for "did you mean" hints.
package suggest

import "strings"

// Closest returns the word of known nearest to word: within two edits
// (a swap of neighbours is one), or one that word begins (two letters at
// least). It returns "" when none is that close, or word is known.
func Closest(word string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if k == word {
			return ""
		}
		d := Distance(word, k)
		if strings.HasPrefix(k, word) && len(word) >= 2 {
			d = min(d, 1)
		}
		if d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// Distance is the Damerau-Levenshtein (optimal string alignment) edit
// distance of a and b.
func Distance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
